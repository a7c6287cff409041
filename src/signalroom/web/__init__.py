"""HTTP: the server, its middleware, authentication and the API routers."""
