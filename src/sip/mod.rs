//! The SIP wire format: parsing, typed views, edits and validation.
