"""The desk (值班台): the operator side. The operator API, one-click ack links and the on-call console, over a
read model it rebuilds from the event topics; what operators do goes to escalation as IncidentActions."""

from services.desk.app import create_app
from services.desk.settings import DeskSettings

__all__ = ["DeskSettings", "create_app"]
