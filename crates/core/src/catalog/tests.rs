use super::*;

fn tool(json: &str) -> RawObject {
    RawObject::from_json(json).unwrap()
}

fn ns(name: &str, prefix: &str) -> Namespace {
    Namespace {
        upstream: name.into(),
        prefix: prefix.into(),
    }
}

#[test]
fn tools_are_namespaced_and_keep_unknown_fields() {
    let a = UpstreamLists {
        tools: vec![tool(r#"{"name":"echo","description":"d","x-vendor":{"k":[1,2.50]}}"#)],
        ..Default::default()
    };
    let cat = Catalog::build(&[ns("everything", "everything")], &[Some(&a)]);
    let e = cat.tool("everything__echo").unwrap();
    assert_eq!(e.original, "echo");
    assert_eq!(
        e.raw.get(),
        r#"{"name":"everything__echo","description":"d","x-vendor":{"k":[1,2.50]}}"#
    );
    assert!(cat.tool("echo").is_none());
}

#[test]
fn empty_prefix_exposes_unchanged_and_collisions_are_withheld() {
    let a = UpstreamLists {
        tools: vec![tool(r#"{"name":"read"}"#), tool(r#"{"name":"a_only"}"#)],
        ..Default::default()
    };
    let b = UpstreamLists {
        tools: vec![tool(r#"{"name":"read"}"#)],
        ..Default::default()
    };
    let cat = Catalog::build(&[ns("a", ""), ns("b", "")], &[Some(&a), Some(&b)]);
    assert!(cat.tool("read").is_none(), "an ambiguous name must route nowhere");
    assert!(cat.tool("a_only").is_some());
    assert_eq!(
        cat.conflicts,
        vec![Conflict {
            kind: Kind::Tool,
            exposed: "read".into(),
            upstreams: vec!["a".into(), "b".into()]
        }]
    );
}

#[test]
fn resources_route_by_uri_then_template() {
    let a = UpstreamLists {
        resources: vec![tool(r#"{"uri":"test://static-text","name":"s"}"#)],
        ..Default::default()
    };
    let b = UpstreamLists {
        templates: vec![tool(r#"{"uriTemplate":"test://template/{id}/data","name":"t"}"#)],
        ..Default::default()
    };
    let cat = Catalog::build(&[ns("a", "a"), ns("b", "b")], &[Some(&a), Some(&b)]);
    assert_eq!(cat.resource_upstream("test://static-text"), Some(0));
    assert_eq!(cat.resource_upstream("test://template/9/data"), Some(1));
    assert_eq!(cat.resource_upstream("test://nowhere"), None);
    assert_eq!(cat.template_upstream("test://template/{id}/data"), Some(1));
}

#[test]
fn unreachable_upstreams_and_nameless_items() {
    let a = UpstreamLists {
        tools: vec![tool(r#"{"description":"no name"}"#)],
        ..Default::default()
    };
    let cat = Catalog::build(&[ns("a", "a"), ns("down", "down")], &[Some(&a), None]);
    assert!(cat.entries(Kind::Tool).is_empty());
    assert_eq!(cat.rejected.len(), 1);
}

#[test]
fn pagination_walks_every_item_once() {
    let lists = UpstreamLists {
        tools: (0..7).map(|i| tool(&format!(r#"{{"name":"t{i}"}}"#))).collect(),
        ..Default::default()
    };
    let cat = Catalog::build(&[ns("u", "u")], &[Some(&lists)]);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = paginate(cat.entries(Kind::Tool), cursor.as_deref(), 3).unwrap();
        seen.extend(page.items.iter().map(|e| e.exposed.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("u__t{i}")).collect::<Vec<_>>());
    assert_eq!(
        paginate(cat.entries(Kind::Tool), Some("garbage"), 3).unwrap_err(),
        BadCursor
    );
    assert_eq!(
        paginate(cat.entries(Kind::Tool), Some("pc1:99"), 3).unwrap_err(),
        BadCursor
    );
}

#[test]
fn held_tools_leave_the_list_and_the_routes_but_keep_their_reason() {
    let a = UpstreamLists {
        tools: vec![
            tool(r#"{"name":"one"}"#),
            tool(r#"{"name":"two"}"#),
            tool(r#"{"name":"three"}"#),
        ],
        ..Default::default()
    };
    let mut cat = Catalog::build(&[ns("a", "a")], &[Some(&a)]);
    let hold = crate::pin::Hold::Changed { pinned: "ab".into() };
    cat.hold_tools(HashMap::from([("a__two".to_owned(), hold.clone())]));
    let names: Vec<&str> = cat.entries(Kind::Tool).iter().map(|e| e.exposed.as_str()).collect();
    assert_eq!(names, ["a__one", "a__three"]);
    assert!(cat.tool("a__two").is_none());
    assert_eq!(cat.tool("a__three").map(|e| e.original.as_str()), Some("three"));
    let held = cat.held_tool("a__two").unwrap();
    assert_eq!((held.entry.original.as_str(), &held.hold), ("two", &hold));
    assert!(held.reason().contains("`a__two`"));
    assert!(cat.held_tool("a__one").is_none());
}
