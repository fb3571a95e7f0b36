"""Follow-up cases (issue 19): the daily inner loop that calls each unhappy customer back.

rules (which responses open a case), sla (the working-hours clock), contacts (personal data),
lifecycle (the case state machine), opening (routing and merging), notices (the outbox),
customers (access and deletion requests), kpis (the monthly figures).
"""
