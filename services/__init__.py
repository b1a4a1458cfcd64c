"""Long-lived parts of a sweep: the shared ESD Ray actor and MLflow tracking and server."""
