"""Deployers: the seed's ``deploy_*`` / ``create_endpoint`` functions and the machinery they share."""
