"""gwd's HTTP/1.1: the server protocol a worker serves on, the message types every stage uses, and the pooled client connections to backends."""
