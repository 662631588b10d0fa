"""Areas: council boundary, wards, crew zones and contractor service areas."""
