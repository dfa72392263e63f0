"""The OpenLesson API: key and base URL, wire models, the HTTP client with its whole-request deadline,
and target (workspace/block) resolution.
"""
