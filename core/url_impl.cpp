// Compiles Boost.URL once (its header-only mode): every URL, path and query rsgate reads goes
// through it (gateway/http/request_input.hpp, rsgate connect's --gateway).
#include <boost/url/src.hpp>
