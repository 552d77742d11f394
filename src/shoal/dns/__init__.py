"""Container DNS: the wire codec (`codec`), the UDP/TCP server (`server`) and the zone (`zone`)."""
