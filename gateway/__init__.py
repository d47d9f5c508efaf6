"""The HTTP gateway: the original API and an OpenAI-compatible one, thin over the client.

Every route calls ``tokenwindow.TokenManagementClient``, the same code other services use; the
gateway adds only HTTP concerns (schemas, auth, admission, Server-Sent Events, Prometheus text).
"""
