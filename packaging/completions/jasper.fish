# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_jasper_global_optspecs
    string join \n config= h/help V/version
end

function __fish_jasper_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_jasper_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_jasper_using_subcommand
    set -l cmd (__fish_jasper_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c jasper -n "__fish_jasper_needs_command" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_needs_command" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_needs_command" -s V -l version -d 'Print version'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "relay" -d 'Run a relay: the REST API of the Jasper mesh, backed by an embedded database'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "stun" -d 'Run the STUN service (UDP and TLS) and the rendezvous of transparent mode'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "serve" -d 'Run every service enabled in the configuration in one process (the self-hosting shape)'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "init" -d 'Create your identity (an RSA-4096 key) and a configuration file if there is none'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "id" -d 'Show your public key and its fingerprint, to give to the people you talk to'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "passphrase" -d 'Set, change or remove the passphrase of your private key (and of your receive keys)'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "contacts" -d 'Manage your contacts: names for the public keys you talk to'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "send" -d 'Send a message to a contact or a group (TEXT "-" reads standard input); prints its id'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "receive" -d 'Fetch, decrypt and verify new messages from your RX relay; prints only what is new'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "history" -d 'Show the conversation with a contact or in a group, edits applied'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "edit" -d 'Replace the text of a message you sent'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "delete" -d 'Delete a message you sent'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "react" -d 'React to a message with :name:'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "group" -d 'Group conversations: one packet per member, each through its own relay'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "reactions" -d 'The reactions you can give and see: built-in emoji shortcodes and your own'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "chat" -d 'Chat with a contact or a group: lines you type go to them, their messages are printed as they come'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "call" -d 'Call a contact (voice, directly over WebRTC): they are rung through the relays and answer with `jasper call` naming you'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "stun-check" -d 'Show your public address as the STUN service sees it (over TLS, and over UDP)'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "servers" -d 'Show the relays you know, their load and roles, and what that means for anonymity; block one'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "config" -d 'Print the sample configuration, or check a configuration file'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c jasper -n "__fish_jasper_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jasper -n "__fish_jasper_using_subcommand relay; and not __fish_seen_subcommand_from peers help" -l listen -d 'Address and port to listen on (config: relay.listen; default 0.0.0.0:8080)' -r
complete -c jasper -n "__fish_jasper_using_subcommand relay; and not __fish_seen_subcommand_from peers help" -l data-dir -d 'Directory for the relay\'s database (config: relay.data_dir)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand relay; and not __fish_seen_subcommand_from peers help" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand relay; and not __fish_seen_subcommand_from peers help" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand relay; and not __fish_seen_subcommand_from peers help" -f -a "peers" -d 'Show the peers of a running relay: state, score, penalties (asks the relay on loopback)'
complete -c jasper -n "__fish_jasper_using_subcommand relay; and not __fish_seen_subcommand_from peers help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jasper -n "__fish_jasper_using_subcommand relay; and __fish_seen_subcommand_from peers" -l url -d 'The relay to ask (default: the configured listen address, on loopback)' -r
complete -c jasper -n "__fish_jasper_using_subcommand relay; and __fish_seen_subcommand_from peers" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand relay; and __fish_seen_subcommand_from peers" -l json -d 'One JSON object per peer and line'
complete -c jasper -n "__fish_jasper_using_subcommand relay; and __fish_seen_subcommand_from peers" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand relay; and __fish_seen_subcommand_from help" -f -a "peers" -d 'Show the peers of a running relay: state, score, penalties (asks the relay on loopback)'
complete -c jasper -n "__fish_jasper_using_subcommand relay; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jasper -n "__fish_jasper_using_subcommand stun" -l udp-listen -d 'Address and port of STUN over UDP (config: stun.udp_listen; default 0.0.0.0:3478)' -r
complete -c jasper -n "__fish_jasper_using_subcommand stun" -l tls-listen -d 'Address and port of STUN over TLS and the rendezvous (config: stun.tls_listen; default 0.0.0.0:5349)' -r
complete -c jasper -n "__fish_jasper_using_subcommand stun" -l data-dir -d 'Directory of the generated TLS certificate and key (config: stun.data_dir)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand stun" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand stun" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand serve" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand serve" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand init" -l receive-key -d 'Create an additional key that only receives, at PATH (then list it in `[identity] receive_keys`); it takes the identity\'s passphrase, if it has one (`--passphrase-stdin` then reads that one)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand init" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand init" -l no-passphrase -d 'Keep the private key unencrypted (anyone who can read the file can read your messages)'
complete -c jasper -n "__fish_jasper_using_subcommand init" -l passphrase-stdin -d 'Read the passphrase from the first line of standard input instead of a prompt'
complete -c jasper -n "__fish_jasper_using_subcommand init" -l json -d 'Print the result as JSON'
complete -c jasper -n "__fish_jasper_using_subcommand init" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand id" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand id" -l passphrase-stdin -d 'Read the passphrase from standard input, if the public key must be read from the private one'
complete -c jasper -n "__fish_jasper_using_subcommand id" -l json -d 'Print `{"public_key", "fingerprint"}`'
complete -c jasper -n "__fish_jasper_using_subcommand id" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand passphrase" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand passphrase" -l remove -d 'Remove the passphrase: the keys are written unencrypted (anyone who can read the files can read your messages)'
complete -c jasper -n "__fish_jasper_using_subcommand passphrase" -l passphrase-stdin -d 'Read the passphrases from standard input instead of prompts: the current one on the first line (only when the key has one), then the new one'
complete -c jasper -n "__fish_jasper_using_subcommand passphrase" -l json -d 'Print the result as JSON'
complete -c jasper -n "__fish_jasper_using_subcommand passphrase" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and not __fish_seen_subcommand_from add list show rename avatar rm help" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and not __fish_seen_subcommand_from add list show rename avatar rm help" -l json -d 'Print JSON (one object per line for lists)'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and not __fish_seen_subcommand_from add list show rename avatar rm help" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and not __fish_seen_subcommand_from add list show rename avatar rm help" -f -a "add" -d 'Save a public key under a name'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and not __fish_seen_subcommand_from add list show rename avatar rm help" -f -a "list" -d 'List contacts'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and not __fish_seen_subcommand_from add list show rename avatar rm help" -f -a "show" -d 'Show one contact'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and not __fish_seen_subcommand_from add list show rename avatar rm help" -f -a "rename" -d 'Rename a contact'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and not __fish_seen_subcommand_from add list show rename avatar rm help" -f -a "avatar" -d 'Set a contact\'s picture'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and not __fish_seen_subcommand_from add list show rename avatar rm help" -f -a "rm" -d 'Remove a contact'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and not __fish_seen_subcommand_from add list show rename avatar rm help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from add" -l avatar -d 'A picture to show for the contact: PNG, JPEG, GIF or WebP, up to 1 MiB (copied into the data directory)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from add" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from add" -l json -d 'Print JSON (one object per line for lists)'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from list" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from list" -l json -d 'Print JSON (one object per line for lists)'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from show" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from show" -l json -d 'Print JSON (one object per line for lists)'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from rename" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from rename" -l json -d 'Print JSON (one object per line for lists)'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from rename" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from avatar" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from avatar" -l json -d 'Print JSON (one object per line for lists)'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from avatar" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from rm" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from rm" -l json -d 'Print JSON (one object per line for lists)'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from help" -f -a "add" -d 'Save a public key under a name'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from help" -f -a "list" -d 'List contacts'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one contact'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from help" -f -a "rename" -d 'Rename a contact'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from help" -f -a "avatar" -d 'Set a contact\'s picture'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from help" -f -a "rm" -d 'Remove a contact'
complete -c jasper -n "__fish_jasper_using_subcommand contacts; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jasper -n "__fish_jasper_using_subcommand send" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand send" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand send" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand send" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand receive" -l interval -d 'Time between polls with --watch (100ms to 1day)' -r
complete -c jasper -n "__fish_jasper_using_subcommand receive" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand receive" -l watch -d 'Keep polling'
complete -c jasper -n "__fish_jasper_using_subcommand receive" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand receive" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand receive" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand history" -s n -l last -d 'Only the last N messages' -r
complete -c jasper -n "__fish_jasper_using_subcommand history" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand history" -l json -d 'One JSON object per message: id, sender, content, timestamp, edited, reactions'
complete -c jasper -n "__fish_jasper_using_subcommand history" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand edit" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand edit" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand edit" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand edit" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand delete" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand delete" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand delete" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand delete" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand react" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand react" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand react" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand react" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand group; and not __fish_seen_subcommand_from create add remove leave forget send list help" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand group; and not __fish_seen_subcommand_from create add remove leave forget send list help" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand group; and not __fish_seen_subcommand_from create add remove leave forget send list help" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand group; and not __fish_seen_subcommand_from create add remove leave forget send list help" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand group; and not __fish_seen_subcommand_from create add remove leave forget send list help" -f -a "create" -d 'Create a group with contacts and tell them'
complete -c jasper -n "__fish_jasper_using_subcommand group; and not __fish_seen_subcommand_from create add remove leave forget send list help" -f -a "add" -d 'Add contacts to a group; everyone in it is told, and they get what is sent from now on'
complete -c jasper -n "__fish_jasper_using_subcommand group; and not __fish_seen_subcommand_from create add remove leave forget send list help" -f -a "remove" -d 'Remove members from a group; they are told too, and get nothing more from it'
complete -c jasper -n "__fish_jasper_using_subcommand group; and not __fish_seen_subcommand_from create add remove leave forget send list help" -f -a "leave" -d 'Leave a group: its members are told, and you get nothing more from it'
complete -c jasper -n "__fish_jasper_using_subcommand group; and not __fish_seen_subcommand_from create add remove leave forget send list help" -f -a "forget" -d 'Forget a group you are out of, and its history (jasper keeps at most 1,000 groups)'
complete -c jasper -n "__fish_jasper_using_subcommand group; and not __fish_seen_subcommand_from create add remove leave forget send list help" -f -a "send" -d 'Send a message to everyone in a group'
complete -c jasper -n "__fish_jasper_using_subcommand group; and not __fish_seen_subcommand_from create add remove leave forget send list help" -f -a "list" -d 'List groups and their members'
complete -c jasper -n "__fish_jasper_using_subcommand group; and not __fish_seen_subcommand_from create add remove leave forget send list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from create" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from create" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from create" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from add" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from add" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from add" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from remove" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from remove" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from remove" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from leave" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from leave" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from leave" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from leave" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from forget" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from forget" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from forget" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from forget" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from send" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from send" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from send" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from send" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from list" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from list" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from list" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a group with contacts and tell them'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add contacts to a group; everyone in it is told, and they get what is sent from now on'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove members from a group; they are told too, and get nothing more from it'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "leave" -d 'Leave a group: its members are told, and you get nothing more from it'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "forget" -d 'Forget a group you are out of, and its history (jasper keeps at most 1,000 groups)'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "send" -d 'Send a message to everyone in a group'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "list" -d 'List groups and their members'
complete -c jasper -n "__fish_jasper_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and not __fish_seen_subcommand_from add rm help" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and not __fish_seen_subcommand_from add rm help" -l json -d 'Print JSON (one object per reaction when listing)'
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and not __fish_seen_subcommand_from add rm help" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and not __fish_seen_subcommand_from add rm help" -f -a "add" -d 'Add a reaction of your own (or change what one shows)'
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and not __fish_seen_subcommand_from add rm help" -f -a "rm" -d 'Remove a reaction you added'
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and not __fish_seen_subcommand_from add rm help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and __fish_seen_subcommand_from add" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and __fish_seen_subcommand_from add" -l json -d 'Print JSON (one object per reaction when listing)'
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and __fish_seen_subcommand_from rm" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and __fish_seen_subcommand_from rm" -l json -d 'Print JSON (one object per reaction when listing)'
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add a reaction of your own (or change what one shows)'
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and __fish_seen_subcommand_from help" -f -a "rm" -d 'Remove a reaction you added'
complete -c jasper -n "__fish_jasper_using_subcommand reactions; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jasper -n "__fish_jasper_using_subcommand chat" -l wait -d 'How long to wait for the contact to come online (transparent mode)' -r
complete -c jasper -n "__fish_jasper_using_subcommand chat" -l fallback -d 'When the contact does not come online: ask (on a terminal; otherwise fail), anonymous (chat through the relays instead) or fail (exit status 3)' -r -f -a "ask\t'Ask on the terminal; fail when standard input is not a terminal'
anonymous\t'Chat through the relays instead'
fail\t'Give up with exit status 3'"
complete -c jasper -n "__fish_jasper_using_subcommand chat" -l interval -d 'Time between checks of the relays for new messages (anonymous mode; 100ms to 1day)' -r
complete -c jasper -n "__fish_jasper_using_subcommand chat" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand chat" -l transparent -d 'Talk directly over WebRTC (transparent mode): faster, but the owner of the STUN service sees which two keys meet. Needs [client] stun and rendezvous'
complete -c jasper -n "__fish_jasper_using_subcommand chat" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand chat" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand chat" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jasper -n "__fish_jasper_using_subcommand call" -l input -d 'Audio to send: "mic" (the microphone, through arecord), "-" (raw PCM on standard input), "silence", or a file (WAV, or raw PCM; ./mic for a file named like a keyword); 16-bit mono at 8,000 Hz' -r
complete -c jasper -n "__fish_jasper_using_subcommand call" -l output -d 'Where their audio goes: "speaker" (through aplay), "-" (raw PCM on standard output), "none", or a file, readable only by you (WAV if it ends in .wav, raw PCM otherwise)' -r
complete -c jasper -n "__fish_jasper_using_subcommand call" -l wait -d 'How long to wait for the contact to take the call' -r
complete -c jasper -n "__fish_jasper_using_subcommand call" -l duration -d 'Hang up after this long (default: when either side hangs up or the input ends)' -r
complete -c jasper -n "__fish_jasper_using_subcommand call" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand call" -l no-ring -d 'Do not ring: by default a message through the relays tells the contact that you are calling (their `receive --watch` or `chat` shows it); skip it when they call you too'
complete -c jasper -n "__fish_jasper_using_subcommand call" -l passphrase-stdin -d 'Read the key\'s passphrase from the first line of standard input'
complete -c jasper -n "__fish_jasper_using_subcommand call" -l json -d 'Print JSON (one object per line)'
complete -c jasper -n "__fish_jasper_using_subcommand call" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand stun-check" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand stun-check" -l json -d 'Print one JSON object: tls {server, address, certificate} and udp {server, address}'
complete -c jasper -n "__fish_jasper_using_subcommand stun-check" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand servers; and not __fish_seen_subcommand_from block unblock help" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand servers; and not __fish_seen_subcommand_from block unblock help" -l json -d 'Print JSON (one object per relay when listing)'
complete -c jasper -n "__fish_jasper_using_subcommand servers; and not __fish_seen_subcommand_from block unblock help" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand servers; and not __fish_seen_subcommand_from block unblock help" -f -a "block" -d 'Never use or learn a relay again'
complete -c jasper -n "__fish_jasper_using_subcommand servers; and not __fish_seen_subcommand_from block unblock help" -f -a "unblock" -d 'Let a blocked relay be learned and used again'
complete -c jasper -n "__fish_jasper_using_subcommand servers; and not __fish_seen_subcommand_from block unblock help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jasper -n "__fish_jasper_using_subcommand servers; and __fish_seen_subcommand_from block" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand servers; and __fish_seen_subcommand_from block" -l json -d 'Print JSON (one object per relay when listing)'
complete -c jasper -n "__fish_jasper_using_subcommand servers; and __fish_seen_subcommand_from block" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jasper -n "__fish_jasper_using_subcommand servers; and __fish_seen_subcommand_from unblock" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand servers; and __fish_seen_subcommand_from unblock" -l json -d 'Print JSON (one object per relay when listing)'
complete -c jasper -n "__fish_jasper_using_subcommand servers; and __fish_seen_subcommand_from unblock" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand servers; and __fish_seen_subcommand_from help" -f -a "block" -d 'Never use or learn a relay again'
complete -c jasper -n "__fish_jasper_using_subcommand servers; and __fish_seen_subcommand_from help" -f -a "unblock" -d 'Let a blocked relay be learned and used again'
complete -c jasper -n "__fish_jasper_using_subcommand servers; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jasper -n "__fish_jasper_using_subcommand config; and not __fish_seen_subcommand_from example check help" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand config; and not __fish_seen_subcommand_from example check help" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand config; and not __fish_seen_subcommand_from example check help" -f -a "example" -d 'Print a commented configuration with every key and its default'
complete -c jasper -n "__fish_jasper_using_subcommand config; and not __fish_seen_subcommand_from example check help" -f -a "check" -d 'Check a configuration file; errors name the line'
complete -c jasper -n "__fish_jasper_using_subcommand config; and not __fish_seen_subcommand_from example check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jasper -n "__fish_jasper_using_subcommand config; and __fish_seen_subcommand_from example" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand config; and __fish_seen_subcommand_from example" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand config; and __fish_seen_subcommand_from check" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "example" -d 'Print a commented configuration with every key and its default'
complete -c jasper -n "__fish_jasper_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Check a configuration file; errors name the line'
complete -c jasper -n "__fish_jasper_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jasper -n "__fish_jasper_using_subcommand completions" -l config -d 'Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)' -r -F
complete -c jasper -n "__fish_jasper_using_subcommand completions" -s h -l help -d 'Print help'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "relay" -d 'Run a relay: the REST API of the Jasper mesh, backed by an embedded database'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "stun" -d 'Run the STUN service (UDP and TLS) and the rendezvous of transparent mode'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "serve" -d 'Run every service enabled in the configuration in one process (the self-hosting shape)'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "init" -d 'Create your identity (an RSA-4096 key) and a configuration file if there is none'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "id" -d 'Show your public key and its fingerprint, to give to the people you talk to'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "passphrase" -d 'Set, change or remove the passphrase of your private key (and of your receive keys)'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "contacts" -d 'Manage your contacts: names for the public keys you talk to'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "send" -d 'Send a message to a contact or a group (TEXT "-" reads standard input); prints its id'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "receive" -d 'Fetch, decrypt and verify new messages from your RX relay; prints only what is new'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "history" -d 'Show the conversation with a contact or in a group, edits applied'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "edit" -d 'Replace the text of a message you sent'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "delete" -d 'Delete a message you sent'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "react" -d 'React to a message with :name:'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "group" -d 'Group conversations: one packet per member, each through its own relay'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "reactions" -d 'The reactions you can give and see: built-in emoji shortcodes and your own'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "chat" -d 'Chat with a contact or a group: lines you type go to them, their messages are printed as they come'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "call" -d 'Call a contact (voice, directly over WebRTC): they are rung through the relays and answer with `jasper call` naming you'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "stun-check" -d 'Show your public address as the STUN service sees it (over TLS, and over UDP)'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "servers" -d 'Show the relays you know, their load and roles, and what that means for anonymity; block one'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "config" -d 'Print the sample configuration, or check a configuration file'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "completions" -d 'Print shell completions'
complete -c jasper -n "__fish_jasper_using_subcommand help; and not __fish_seen_subcommand_from relay stun serve init id passphrase contacts send receive history edit delete react group reactions chat call stun-check servers config completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from relay" -f -a "peers" -d 'Show the peers of a running relay: state, score, penalties (asks the relay on loopback)'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from contacts" -f -a "add" -d 'Save a public key under a name'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from contacts" -f -a "list" -d 'List contacts'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from contacts" -f -a "show" -d 'Show one contact'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from contacts" -f -a "rename" -d 'Rename a contact'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from contacts" -f -a "avatar" -d 'Set a contact\'s picture'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from contacts" -f -a "rm" -d 'Remove a contact'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "create" -d 'Create a group with contacts and tell them'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "add" -d 'Add contacts to a group; everyone in it is told, and they get what is sent from now on'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "remove" -d 'Remove members from a group; they are told too, and get nothing more from it'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "leave" -d 'Leave a group: its members are told, and you get nothing more from it'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "forget" -d 'Forget a group you are out of, and its history (jasper keeps at most 1,000 groups)'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "send" -d 'Send a message to everyone in a group'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "list" -d 'List groups and their members'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from reactions" -f -a "add" -d 'Add a reaction of your own (or change what one shows)'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from reactions" -f -a "rm" -d 'Remove a reaction you added'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from servers" -f -a "block" -d 'Never use or learn a relay again'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from servers" -f -a "unblock" -d 'Let a blocked relay be learned and used again'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "example" -d 'Print a commented configuration with every key and its default'
complete -c jasper -n "__fish_jasper_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Check a configuration file; errors name the line'
