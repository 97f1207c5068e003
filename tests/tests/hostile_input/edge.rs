//! The Edge's HTTP surface: the scrape proxy and `/_edge/*` under hostile
//! headers, bodies and connections.
