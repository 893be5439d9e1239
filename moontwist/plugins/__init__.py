"""Built-in feature plugins, registered exactly like third-party ones."""
