"""oblio: the domain of a GDPR data-subject-rights engine for DynamoDB and S3."""

__version__ = "0.1.0"
