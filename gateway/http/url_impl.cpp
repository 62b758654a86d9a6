// Compiles Boost.URL once (its header-only mode): every URL, path and query the gateway
// reads goes through it (gateway/http/request_input.hpp).
#include <boost/url/src.hpp>
