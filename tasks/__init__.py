"""The stages of the loop: plain functions (testable without Prefect); `flows/` wraps them as tasks."""
