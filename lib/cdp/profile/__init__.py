"""The golden customer profile: survivorship of attributes and aggregates per customer.

``survivorship`` picks one best value (with provenance) per attribute and customer by rules
declared in ``conf/rules/profile.yaml``; ``aggregates`` computes identifiers, consents, RFM and
engagement; ``stage`` (``cdp run profile``) joins them into ``gold/customer_profile``.
"""
