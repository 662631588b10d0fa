"""A GOV.UK Notify stand-in we own: Notify's v2 API shape, JWT checked, messages recorded, receipts sent back."""
