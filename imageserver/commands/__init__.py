"""The `images` command line: server, process, doctor, nginx_config."""
