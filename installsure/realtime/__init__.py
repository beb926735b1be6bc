"""Realtime: the WAMP v2 broker at ``/ws``, its plain JSON protocol, and the Redis
backplane that carries events between processes (see :mod:`installsure.realtime.service`).
"""
