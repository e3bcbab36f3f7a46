"""Kafka adapters (confluent-kafka): topic administration."""
