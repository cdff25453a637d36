"""What a worker's web server serves besides the read API: the dashboard pages."""
