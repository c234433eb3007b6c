"""The dashboard as a `panel serve` script, for Binder's /panel/dashboard URL."""
from phyvae_dash import Dashboard

Dashboard().servable()
