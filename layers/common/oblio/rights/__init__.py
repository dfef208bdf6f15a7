"""What callers ask for: request intake, search, consent, self-service, administration."""
