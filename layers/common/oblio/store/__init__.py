"""The only code that talks to AWS: clients, mapped tables, objects, archives, oblio's own
models, outbound mail, SMS and events, workflows."""
