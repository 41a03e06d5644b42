"""Azure Functions blueprints: HTTP API, Web PubSub event handlers and the segment translator."""
