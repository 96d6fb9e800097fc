"""The desk (值班台): the operator side. The operator API, one-click ack links, the on-call console and the
read model they show, rebuilt from the event topics."""
