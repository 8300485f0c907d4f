"""The API's routes, one module per resource: remix submits, requests, outputs, cancel,
events, account, health, the playground."""
