"""How clients in the wild speak HTTP to a real server: h2c upgrade offers, Expect: 100-continue,
keep-alive and pipelining; the OpenAPI document against the README's requests; offline docs."""
