"""Namespaces named after other frameworks' APIs, as thin adaptors over lstmkit's layers and kernels."""
