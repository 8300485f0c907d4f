"""The store core both SQL backends share: row <-> record conversion (`rows`), the dialect
object (`dialect`), the webhook outbox's statements (`outbox`) and `SQLJobStore` (`store`), the
base class that implements every `JobStore` method whose SQL the dialects agree on."""
