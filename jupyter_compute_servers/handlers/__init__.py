"""REST and websocket handlers: thin adapters over the service layer."""
