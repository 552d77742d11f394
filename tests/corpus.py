"""Where the shared Compose corpus lives (../shared beside the checkout, read-only)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()
CORPUS = SHARED / "compose-corpus"
SCHEMA = REPO / "src" / "shoal" / "compose" / "compose-spec.json"

# The samples' own .env files are not in the corpus; these are the values awesome-compose ships
# (wireguard's .env has an inline comment the dotenv rules must strip).
SAMPLE_DOTENV = {
    "wireguard.yaml": "TIMEZONE=Europe/Paris\n"
    "VPN_SERVER_URL=your-domain.dyndns.com # free examples: duckdns.org, no-ip.com\n",
    "plex.yaml": "PLEX_MEDIA_PATH=/var/lib/plexmedia\n",
    "postgresql-pgadmin.yaml": "POSTGRES_USER=yourUser\nPOSTGRES_PW=changeit\n"
    "POSTGRES_DB=postgres\nPGADMIN_MAIL=your@email.com\nPGADMIN_PW=changeit\n",
    "pihole-cloudflared-DoH.yaml": "PIHOLE_PW=changeme\nPIHOLE_ROUTER_IP=192.168.0.1\n"
    "PIHOLE_NETWORK_DOMAIN=lan\nPIHOLE_HOST_IP=192.168.0.2\nPIHOLE_HOST_IPV6=\n"
    "PIHOLE_REVERSE_DNS=false\nTIMEZONE=Europe/Paris\n",
}
