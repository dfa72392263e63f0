"""Durable delivery: the on-disk spool, the uploader and its adaptive rate, and the local record of
delivered captures.
"""
