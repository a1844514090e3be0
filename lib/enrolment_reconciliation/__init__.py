"""Sunbird Lern enrolment-reconciliation on Apache Spark."""
