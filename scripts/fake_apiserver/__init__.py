"""The fake kube-apiserver of scripts/fake_apiserver.py, one job per module."""
