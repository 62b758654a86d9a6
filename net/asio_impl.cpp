// The one translation unit that compiles Boost.Asio (with SSL) and Boost.Beast
// (BOOST_ASIO_SEPARATE_COMPILATION / BOOST_BEAST_SEPARATE_COMPILATION, set PUBLIC on the
// rsgate_net target). Every target that includes Asio or Beast links rsgate_net.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
