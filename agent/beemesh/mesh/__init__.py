"""The py-libp2p shell: hosts, DHTs and pub/sub topics. No protocol decisions live here."""
