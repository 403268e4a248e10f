"""The JSON API: one view per operation, with small input and output serializers, in one module per domain.

The URLs are in `compositions.api_urls`; where one URL serves several operations, a method
router sends each method to its own view (`routing.method_router`), and the schema documents
each view as its operation (`schema.SchemaGenerator`).
"""
