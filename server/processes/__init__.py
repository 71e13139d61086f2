"""Running the host as many processes: the supervisor, nginx in front, Redis for the limits."""
