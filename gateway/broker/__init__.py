"""The broker port: what a STOMP session needs from RabbitMQ, and its AMQP adapter."""
