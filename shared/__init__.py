"""Infrastructure both apps use: nothing here imports anyon, execution or secrets_app."""
