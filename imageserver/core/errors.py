"""The one exception tree of the server. Each class carries the HTTP status it is answered with.

    ImageServerError (500)
    ├── ClientError (400)              the request is at fault; never logged as a server failure
    │   ├── BadRequest (400)           empty body, bad namespace, bad parameter
    │   ├── Unauthorized (401)         a purge without its bearer key
    │   ├── Forbidden (403)            a source URL on a refused address
    │   ├── NotFound (404)             unknown image, bad output name, source not found
    │   ├── PayloadTooLarge (413)      an upload or download over the limits
    │   ├── UnsupportedMediaType (415) bytes that are not an image of an accepted kind
    │   └── Unprocessable (422)        an image we recognise but cannot decode
    ├── NotConfigured (501)            ImageMagick or a format it needs is missing
    ├── StoreError (502)               the remote store refused or failed
    ├── Unavailable (503)              busy, a lock not had in time, or the store unreachable
    ├── GatewayTimeout (504)           a source URL took too long
    ├── DiskFull (507)                 local disk full, or under its --minimum_free_bytes reserve
    └── SettingsError                  a bad setting; stops start-up, never reaches HTTP
"""


class ImageServerError(Exception):
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ClientError(ImageServerError):
    status = 400


class BadRequest(ClientError):
    status = 400


class Unauthorized(ClientError):
    status = 401


class Forbidden(ClientError):
    status = 403


class NotFound(ClientError):
    status = 404


class PayloadTooLarge(ClientError):
    status = 413


class UnsupportedMediaType(ClientError):
    status = 415


class Unprocessable(ClientError):
    status = 422


class NotConfigured(ImageServerError):
    status = 501


class StoreError(ImageServerError):
    status = 502


class Unavailable(ImageServerError):
    status = 503


class GatewayTimeout(ImageServerError):
    status = 504


class DiskFull(ImageServerError):
    """Nothing new can be stored on local disk; what is there is still served."""
    status = 507


class SettingsError(ImageServerError):
    """A bad setting: start-up stops with this one-line message."""
