// Front door of the auth library: identifier formats, passwords and secret handling. CHAP,
// session keys, TOTP and the grants policy join it as the core flow is built (docs/security.md).
#pragma once
#include "auth/formats.hpp"
#include "auth/password.hpp"
#include "auth/scram.hpp"
