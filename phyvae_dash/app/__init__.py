"""The Panel/HoloViews dashboard (store, views, app). Imports no numerics of its own."""
