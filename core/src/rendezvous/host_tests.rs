//! The sans-IO pieces a server hosts: the mailbox-protocol session, the
//! long-poll, and operations as values.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::code::ChannelId;
use crate::mailbox_wire::ServerMessage;
use crate::time::Timestamp;
use crate::wire::{CloseRequest, FetchRequest, JoinRequest, MailboxId, Mood, PostRequest, Request, Response};

const APP: &str = "app";

/// A host as small as they come: the session answered in this process.
fn send(state: &mut Rendezvous, session: &mut MailboxSession, frame: Value) -> Vec<Value> {
    let replies = session.answer_locally(state, Timestamp::EPOCH, frame.to_string().as_bytes());
    replies.iter().map(|r| serde_json::from_str(&r.to_json(0.0)).expect("JSON")).collect()
}

fn types(replies: &[Value]) -> Vec<&str> {
    replies.iter().map(|r| r["type"].as_str().unwrap_or("?")).collect()
}

#[test]
fn a_session_allows_one_of_each_and_refuses_in_the_reference_servers_words() {
    let mut state = Rendezvous::new(RendezvousConfig::default(), [1; 32]);
    let mut session = MailboxSession::new(false);
    let refused = send(&mut state, &mut session, json!({"type": "allocate", "id": "a"}));
    assert_eq!(types(&refused), ["ack", "error"]);
    assert_eq!(refused[0]["id"], "a");
    assert_eq!(refused[1]["error"], "must bind first");
    assert_eq!(refused[1]["orig"]["type"], "allocate", "an error quotes its frame");
    send(&mut state, &mut session, json!({"type": "bind", "appid": APP, "side": "s1"}));
    assert_eq!(
        send(&mut state, &mut session, json!({"type": "bind", "appid": APP, "side": "s1"}))[1]["error"],
        "already bound"
    );
    let allocated = send(&mut state, &mut session, json!({"type": "allocate"}));
    assert_eq!(types(&allocated), ["ack", "allocated"]);
    let greedy = send(&mut state, &mut session, json!({"type": "allocate"}));
    assert_eq!(greedy[1]["error"], "you already allocated one, don't be greedy");
    let nameplate = allocated[1]["nameplate"].as_str().unwrap().to_string();
    let claimed = send(&mut state, &mut session, json!({"type": "claim", "nameplate": nameplate}));
    assert_eq!(types(&claimed), ["ack", "claimed"]);
    let again = send(&mut state, &mut session, json!({"type": "claim", "nameplate": nameplate}));
    assert_eq!(again[1]["error"], "only one claim per connection");
    let other = send(&mut state, &mut session, json!({"type": "release", "nameplate": "99"}));
    assert_eq!(other[1]["error"], "release and claim must use same nameplate");
    assert_eq!(types(&send(&mut state, &mut session, json!({"type": "release"}))), ["ack", "released"]);
    let add = send(&mut state, &mut session, json!({"type": "add", "phase": "pake", "body": "aa"}));
    assert_eq!(add[1]["error"], "must open mailbox before adding");
    // A third side is crowded out, in the word clients recognise.
    let mailbox = claimed[1]["mailbox"].as_str().unwrap().to_string();
    for side in ["s2", "s3"] {
        let mut other = MailboxSession::new(false);
        send(&mut state, &mut other, json!({"type": "bind", "appid": APP, "side": side}));
        let opened = send(&mut state, &mut other, json!({"type": "open", "mailbox": mailbox}));
        if side == "s3" {
            assert_eq!(opened[1]["error"], "crowded");
        }
    }
}

#[test]
fn a_session_pushes_each_message_once_and_only_after_it_opened() {
    let mut state = Rendezvous::new(RendezvousConfig::default(), [2; 32]);
    let (mut first, mut second) = (MailboxSession::new(false), MailboxSession::new(false));
    send(&mut state, &mut first, json!({"type": "bind", "appid": APP, "side": "s1"}));
    send(&mut state, &mut second, json!({"type": "bind", "appid": APP, "side": "s2"}));
    assert!(first.listening().is_none());
    send(&mut state, &mut first, json!({"type": "open", "mailbox": "box"}));
    let added = send(&mut state, &mut first, json!({"type": "add", "phase": "pake", "body": "aa", "id": 5}));
    assert_eq!(types(&added), ["ack", "message"], "a side is sent its own message too");
    assert_eq!(added[1]["id"], "5", "the frame's id is echoed");
    let opened = send(&mut state, &mut second, json!({"type": "open", "mailbox": "box"}));
    assert_eq!(types(&opened), ["ack", "message"]);
    let listening = first.listening().unwrap();
    let everything = state.messages_after(listening.appid, listening.mailbox, 0).to_vec();
    assert!(first.on_news(&everything).is_empty(), "a message already sent is not sent again");
    assert!(first.news_locally(&state).is_empty());
    let closed = send(&mut state, &mut first, json!({"type": "close", "mood": "happy"}));
    assert_eq!(types(&closed), ["ack", "closed"]);
    assert!(first.listening().is_none(), "a closed session listens to nothing");
    assert!(first.keep_open().is_none());
    assert_eq!(second.keep_open().map(|op| op.limits().len()), Some(0), "keeping open is not rate limited");
}

#[test]
fn an_operation_refused_by_its_host_is_an_error_quoting_the_frame() {
    let mut session = MailboxSession::new(true);
    assert!(matches!(session.on_frame(br#"{"type": "bind", "appid": "app", "side": "s1"}"#), Step::Reply(_)));
    let Step::Run(op) = session.on_frame(br#"{"type": "list", "id": 1}"#) else { panic!("a list runs") };
    assert_eq!(op.limits(), &[Limit::Messages]);
    assert!(session.is_running());
    let refused =
        session.on_outcome(Err(crate::wire::WireError::new(crate::wire::ErrorCode::RateLimited, "slow down")));
    assert!(matches!(&refused[..], [ServerMessage::Ack { .. }, ServerMessage::Error { error, orig }]
        if error == "rate-limited: slow down" && orig["type"] == "list"));
    assert!(!session.is_running());
}

#[test]
fn list_names_every_number_of_the_lengths_in_use_unless_listing_is_allowed() {
    let mut state = Rendezvous::new(RendezvousConfig::default(), [3; 32]);
    let channel = ChannelId::new(7).unwrap();
    state.claim(Timestamp::EPOCH, APP, channel, "s1").unwrap();
    for (allow_list, expected) in [(true, 1), (false, 9)] {
        let mut session = MailboxSession::new(allow_list);
        send(&mut state, &mut session, json!({"type": "bind", "appid": APP, "side": "s2"}));
        let listed = send(&mut state, &mut session, json!({"type": "list"}));
        let names = listed[1]["nameplates"].as_array().unwrap();
        assert_eq!(names.len(), expected, "allow_list: {allow_list}");
        assert!(names.contains(&json!({"id": "7"})), "{names:?}");
    }
}

fn joined(state: &mut Rendezvous, channel: ChannelId) {
    for side in ["s1", "s2"] {
        state.handle(Timestamp::EPOCH, &Request::Join(JoinRequest::new(APP, side, channel, true))).unwrap();
    }
}

#[test]
fn a_post_that_waits_is_stored_first_then_answered_with_the_log_once_the_peer_posts() {
    let mut state = Rendezvous::new(RendezvousConfig::default(), [4; 32]);
    let channel = ChannelId::new(3).unwrap();
    joined(&mut state, channel);
    let mut post = PostRequest::new(APP, "s1", channel, "pake", "aa");
    (post.after, post.wait_ms) = (Some(0), 10_000);
    let post = Request::Post(post);
    let mut poll = LongPoll::new(post, Timestamp::EPOCH, Duration::from_secs(60)).expect("it waits");
    assert!(!poll.reads(), "the post runs first");
    let posted = state.handle(Timestamp::EPOCH, poll.next());
    assert_eq!(poll.on_answer(Timestamp::EPOCH, posted, true), Held::Run);
    assert!(poll.reads());
    let read = state.handle(Timestamp::EPOCH, poll.next());
    assert_eq!(poll.on_answer(Timestamp::EPOCH, read, true), Held::Wait { until: Timestamp::from_millis(10_000) });
    let peer = Request::Post(PostRequest::new(APP, "s2", channel, "pake", "bb"));
    state.handle(Timestamp::from_millis(10), &peer).unwrap();
    let read = state.handle(Timestamp::from_millis(10), poll.next());
    let Held::Answer(Ok(Response::Posted(posted))) = poll.on_answer(Timestamp::from_millis(10), read, true) else {
        panic!("the post is answered")
    };
    assert!(posted.log.expect("with its log").has_news_for("s1"));
}

#[test]
fn a_long_poll_answers_from_a_snapshot_only_with_a_message_its_last_read_did_not_see_and_its_side_open() {
    let mut state = Rendezvous::new(RendezvousConfig::default(), [7; 32]);
    let channel = ChannelId::new(6).unwrap();
    joined(&mut state, channel);
    let mailbox = state.mailbox_of(APP, channel).unwrap().clone();
    let snapshot = |state: &Rendezvous| state.mailbox_snapshot(APP, &mailbox).unwrap();
    let mut post = PostRequest::new(APP, "s1", channel, "pake", "aa");
    (post.after, post.wait_ms) = (Some(0), 10_000);
    let mut poll = LongPoll::new(Request::Post(post), Timestamp::EPOCH, Duration::from_secs(60)).unwrap();
    let posted = state.handle(Timestamp::EPOCH, poll.next());
    assert!(!poll.may_answer_from(&snapshot(&state)), "no read has run yet");
    assert_eq!(poll.on_answer(Timestamp::EPOCH, posted, true), Held::Run);
    let read = state.handle(Timestamp::EPOCH, poll.next());
    assert!(matches!(poll.on_answer(Timestamp::EPOCH, read, true), Held::Wait { .. }));
    assert!(!poll.may_answer_from(&snapshot(&state)), "its own post, which its read saw");
    state.handle(Timestamp::EPOCH, &Request::Post(PostRequest::new(APP, "s2", channel, "pake", "bb"))).unwrap();
    let news = snapshot(&state);
    assert!(poll.may_answer_from(&news));
    // From the snapshot, as a host does: the peer's message answers.
    let mut view =
        Rendezvous::restore(RendezvousConfig::default(), RendezvousSnapshot::new(vec![news]), [8; 32]).unwrap();
    let read = view.handle(Timestamp::EPOCH, poll.next());
    let Held::Answer(Ok(Response::Posted(posted))) = poll.on_answer(Timestamp::EPOCH, read, true) else {
        panic!("the post is answered from the snapshot")
    };
    assert!(posted.log.expect("with its log").has_news_for("s1"));

    // A read that found its side closed: the log may have been dropped
    // since any snapshot, so none is trusted.
    let channel = ChannelId::new(8).unwrap();
    joined(&mut state, channel);
    let mailbox = state.mailbox_of(APP, channel).unwrap().clone();
    state.handle(Timestamp::EPOCH, &Request::Close(CloseRequest::new(APP, "s1", channel, Mood::Happy))).unwrap();
    let fetch = Request::Fetch(FetchRequest::new(APP, "s1", channel, 0, 10_000)).with_mailbox(Some(mailbox.clone()));
    let mut poll = LongPoll::new(fetch, Timestamp::EPOCH, Duration::from_secs(60)).unwrap();
    let read = state.handle(Timestamp::EPOCH, poll.next());
    assert!(matches!(poll.on_answer(Timestamp::EPOCH, read, true), Held::Wait { .. }), "its own close is no news");
    state.handle(Timestamp::EPOCH, &Request::Post(PostRequest::new(APP, "s2", channel, "pake", "bb"))).unwrap();
    assert!(!poll.may_answer_from(&state.mailbox_snapshot(APP, &mailbox).unwrap()));
}

#[test]
fn a_long_poll_answers_at_once_when_it_cannot_wait_or_fails_and_gives_back_what_does_not_wait() {
    let mut state = Rendezvous::new(RendezvousConfig::default(), [5; 32]);
    let channel = ChannelId::new(4).unwrap();
    let fetch = |wait_ms| Request::Fetch(FetchRequest::new(APP, "s1", channel, 0, wait_ms));
    assert!(LongPoll::new(fetch(0), Timestamp::EPOCH, Duration::from_secs(60)).is_err(), "no wait, no poll");
    assert!(LongPoll::new(fetch(500), Timestamp::EPOCH, Duration::ZERO).is_err(), "the server's cap is zero");
    let mut poll = LongPoll::new(fetch(500), Timestamp::EPOCH, Duration::from_secs(60)).unwrap();
    let unknown = state.handle(Timestamp::EPOCH, poll.next());
    assert!(matches!(poll.on_answer(Timestamp::EPOCH, unknown, true), Held::Answer(Err(_))), "an error answers");
    joined(&mut state, channel);
    let mut poll = LongPoll::new(fetch(500), Timestamp::EPOCH, Duration::from_secs(60)).unwrap();
    let read = state.handle(Timestamp::EPOCH, poll.next());
    assert!(matches!(poll.on_answer(Timestamp::EPOCH, read, false), Held::Answer(Ok(Response::Fetched(_)))));
}

#[test]
fn demands_name_what_an_operation_would_add() {
    let mut state = Rendezvous::new(RendezvousConfig::default(), [6; 32]);
    let channel = ChannelId::new(5).unwrap();
    let claim = Op::Claim { appid: APP.into(), nameplate: channel, side: "s1".into() };
    assert_eq!(state.demands(&claim), Demands { new_channel: true, new_app: true, stored_bytes: 0 });
    let Answer::Claimed(mailbox) = state.apply(Timestamp::EPOCH, &claim).unwrap().answer else { panic!() };
    assert_eq!(state.demands(&claim), Demands::default(), "a claim of a nameplate in use makes nothing");
    let add = Op::Add {
        appid: APP.into(),
        mailbox: mailbox.clone(),
        side: "s1".into(),
        phase: "pake".into(),
        body: "abcd".into(),
        client_id: None,
    };
    assert_eq!(state.demands(&add).stored_bytes, 4);
    let outcome = state.apply(Timestamp::EPOCH, &add).unwrap();
    assert_eq!(outcome.instance, state.mailbox_instance(APP, &mailbox));
    assert_eq!(state.demands(&add).stored_bytes, 0, "a repeat stores nothing");
    let other = Op::Open { appid: APP.into(), mailbox: MailboxId::new("other").unwrap(), side: "s1".into() };
    assert_eq!(state.demands(&other), Demands { new_channel: true, new_app: false, stored_bytes: 0 });
}
