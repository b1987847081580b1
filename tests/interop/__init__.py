"""Scenarios run against the real rabbitmq_web_stomp plugin and the gateway."""
