"""Runtime pieces every yuqing service shares."""

from services.common.config import YuqingConfig, load_config
from services.common.exceptions import ConfigError, DeadLetter, YuqingError

__all__ = ["ConfigError", "DeadLetter", "YuqingConfig", "YuqingError", "load_config"]
