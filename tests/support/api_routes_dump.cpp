// Prints every (method, path) the gateway's session service routes, one "METHOD PATH" per
// line, from service::api_routes() (the route table itself): tests/api/openapi_check.py
// compares them with docs/api/openapi.yaml both ways.
#include <cstdio>

#include "gateway/service.hpp"

int main() {
  for (auto& [method, path] : rsgate::gateway::service::api_routes()) std::printf("%s %s\n", method.c_str(), path.c_str());
  return 0;
}
