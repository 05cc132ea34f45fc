"""Local control API: HTTP/1.1 with JSON bodies on a unix socket (file mode 0600)."""
