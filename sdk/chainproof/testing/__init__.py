"""Loopback services for testing code that uses chainproof, without a cloud project.

Opt-in (``pip install 'chainproof[testing]'``) and never imported by chainproof itself. Every
server binds 127.0.0.1 only and speaks the real wire protocol, so the clients under test are
the real google-cloud-storage, google-cloud-aiplatform, google-cloud-kms, google-auth,
google-cloud-secret-manager and hvac:

- :mod:`chainproof.testing.servers`: the Cloud Storage emulator (``gcs_emulator``), a
  fault-injecting HTTP proxy (``proxy``, ``ProxyHandler``, ``serve``), an HTTPS object server
  (``object_server``) and self-signed certificates (``make_self_signed_cert``);
- :mod:`chainproof.testing.vertex`: Vertex AI's Model and Pipeline services over gRPC/TLS
  (``vertex_server``);
- :mod:`chainproof.testing.kms`: Cloud KMS ``GetPublicKey``/``AsymmetricSign`` (``FakeKms``);
- :mod:`chainproof.testing.metadata`: the GCE metadata server (``FakeMetadataServer``);
- :mod:`chainproof.testing.secret_manager`: Secret Manager (``secret_manager_server``);
- :mod:`chainproof.testing.vault`: Vault's HTTP API (``vault_server``).

Import the submodule you need; each needs only its own client library.
"""

__all__: list[str] = []
