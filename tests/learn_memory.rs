//! The learner's memory bound, measured: the heap held by a `Usage` filled to its bounds with
//! realistic names (the allocator of this test binary counts live bytes). docs/learn.md states
//! the bound this asserts.

use palisade::policy::rbac::learn::usage::{MAX_ACCOUNTS, MAX_ENTRIES, MAX_ENTRIES_PER_ACCOUNT};
use palisade::policy::rbac::learn::{Access, Account, Request, Target, Usage};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn request(account: usize, i: usize) -> Request {
    Request {
        account: Account::new(
            &format!("team-{:03}", account % 200),
            &format!("controller-{account:04}"),
        ),
        access: Access {
            verb: ["get", "list", "watch", "update", "patch"][i % 5].to_string(),
            target: Target::Resource {
                group: "apps.example.com".into(),
                resource: format!("deployments-{}/status", i / 5),
                namespace: format!("team-{:03}", account % 200),
                name: String::new(),
            },
        },
        at: 1_796_119_200 + i as i64,
        allowed: true,
    }
}

#[test]
fn a_full_usage_stays_within_the_stated_bound() {
    let before = LIVE.load(Ordering::Relaxed);
    let mut usage = Usage::default();
    // Far more than the bounds allow: 10,000 accounts x 300 accesses each.
    for account in 0..2 * MAX_ACCOUNTS {
        for i in 0..MAX_ENTRIES_PER_ACCOUNT + 44 {
            usage.record(&request(account, i));
        }
    }
    let held = (LIVE.load(Ordering::Relaxed) - before) as usize;
    assert_eq!(usage.entries(), MAX_ENTRIES);
    assert!(usage.accounts.len() <= MAX_ACCOUNTS);
    let per_entry = held / MAX_ENTRIES;
    eprintln!(
        "{} accounts, {} accesses: {:.1} MiB held, {per_entry} bytes per access",
        usage.accounts.len(),
        usage.entries(),
        held as f64 / (1 << 20) as f64
    );
    assert!(
        held < 20 << 20,
        "the learner holds {held} bytes, more than the 20 MiB stated"
    );
}
