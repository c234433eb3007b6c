"""The dashboard as a `panel serve` script, for Binder's /panel/dashboard URL."""
from phyvae_dash.app.app import Dashboard

Dashboard().servable(title="phyvae-dash")
