//! Feeds arbitrary bytes to every decoder a kernel reply goes through:
//! message framing, acknowledgements, generic netlink headers, and the IPVS
//! service and destination decoders. None may panic.
#![no_main]

use ipvs_sys::AddressFamily;
use ipvs_sys::ipvs::codec::{decode_destination, decode_service, find_nested};
use ipvs_sys::netlink::attr::Attrs;
use ipvs_sys::netlink::message::Messages;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for msg in Messages::new(data).flatten() {
        let _ = msg.ack();
        if let Ok((_, attrs)) = msg.genl() {
            if let Ok(Some(svc)) = find_nested(attrs.clone(), 1) {
                let _ = decode_service(svc);
            }
            if let Ok(Some(dest)) = find_nested(attrs, 2) {
                let _ = decode_destination(dest, AddressFamily::Ipv6);
            }
        }
    }
    let _ = decode_service(Attrs::new(data));
    let _ = decode_destination(Attrs::new(data), AddressFamily::Ipv4);
});
