"""Wake-ups between the processes of one host without Redis (web server and worker cluster)."""
